package flow_test

import (
	"context"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/flow"
)

// Every worker builds the same Control for the tenant and puts its Transport under the one
// HTTP client that every SuperOffice client (SOAP, REST, the logins) uses.
func ExampleControl_Transport() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	fl, err := flow.New(flow.Config{
		Redis:          rdb,
		Tenant:         "sod.superoffice.com/cust12345",
		Rate:           20, // requests/s for all workers together
		MaxConcurrency: 4,  // in flight per ERP connection, all workers together
	})
	if err != nil {
		panic(err)
	}
	defer fl.Close()
	hc := &http.Client{Transport: fl.Transport(http.DefaultTransport), Timeout: time.Minute}
	_ = hc // soap.Config{HTTPClient: hc, ...}

	// The task handler asks the ERP connection's breaker before a batch and tells it the answer.
	ctx, err := fl.Admit(context.Background(), 3)
	if err != nil {
		return // a *flow.PausedError: hold the batch, it uses no retry
	}
	_ = ctx // the call's context: the transport counts the request under connection 3
	fl.Outcome(ctx, 3, "", true, true)
}
