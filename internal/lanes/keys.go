package lanes

// tenantKeys are one tenant's keys (see the package doc's key schema); they share a hash slot.
type tenantKeys struct {
	lane, jobs, leased, inflight, capped string
}

func (q *Queue) tenantKeys(tenant string) tenantKeys {
	p := q.cfg.Prefix + ":{t:" + tenant + "}:"
	return tenantKeys{lane: p + "lane", jobs: p + "jobs", leased: p + "leased", inflight: p + "inflight", capped: p + "capped"}
}

func (q *Queue) dueKey() string  { return q.cfg.Prefix + ":{sched}:due" }
func (q *Queue) wakeKey() string { return q.cfg.Prefix + ":{sched}:wake" }

// asynq's keys, as hibiken/asynq's internal/base names them (QueueKeyPrefix, PendingKey,
// TaskKey). asynq's Inspector reads a whole queue's stats in one script, far too heavy for a
// check before every dispatch; TestAsynqKeys checks these names against asynq itself.
func asynqPendingKey(queue string) string  { return "asynq:{" + queue + "}:pending" }
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }
