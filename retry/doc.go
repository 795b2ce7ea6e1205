// Package retry is erpresync's backoff policy: exponential backoff with jitter, built on
// cenkalti/backoff/v4, used in two layers.
//
// The fast, in-process layer is [Policy.Do]: a few retries of one operation, for errors the
// caller classifies as retryable, within a time budget (MaxElapsed) that fits inside the task
// timeout. The long-horizon layer is [Policy.Delay]: the wait before the n-th retry of a
// task, from which the tasks package builds asynq's RetryDelayFunc.
//
// The package knows nothing of SOAP, queues or asynq; the caller decides what is
// retryable and how long a server asked it to wait (for example an HTTP Retry-After).
package retry
