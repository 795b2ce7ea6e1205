// Command naive is the baseline the end-to-end benchmark measures erpresync against: a
// worker written the way one first writes it with asynq — one task per external key, one
// ForceResyncExternal call per task, no batching, no ledger, no dead letters. It uses
// erpresync's own SOAP client, so the comparison is about the queueing, not the XML.
//
// It reads REDIS_ADDR, SUPEROFFICE_URL, SUPEROFFICE_USERNAME, SUPEROFFICE_PASSWORD and
// NAIVE_CONCURRENCY, serves the "resync:key" tasks that the benchmark enqueues, and stops
// on SIGTERM. It is a measuring instrument, not a product: do not deploy it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hibiken/asynq"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/soap"
)

// TypeKey is the task type of one key.
const TypeKey = "resync:key"

// Key is the payload of a TypeKey task.
type Key struct {
	ErpConnectionID int               `json:"erp_connection"`
	ActorType       erpsync.ActorType `json:"actor_type"`
	Key             string            `json:"key"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "naive:", err)
		os.Exit(2)
	}
}

func run() error {
	login, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{
		BaseURL:  os.Getenv("SUPEROFFICE_URL"),
		UserName: os.Getenv("SUPEROFFICE_USERNAME"),
		Password: os.Getenv("SUPEROFFICE_PASSWORD"),
	})
	if err != nil {
		return err
	}
	client, err := soap.New(soap.Config{BaseURL: os.Getenv("SUPEROFFICE_URL"), Auth: login})
	if err != nil {
		return err
	}
	concurrency, _ := strconv.Atoi(os.Getenv("NAIVE_CONCURRENCY"))
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: os.Getenv("REDIS_ADDR")}, asynq.Config{Concurrency: concurrency})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeKey, func(ctx context.Context, t *asynq.Task) error {
		var k Key
		if err := json.Unmarshal(t.Payload(), &k); err != nil {
			return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		_, err := client.ForceResyncExternal(ctx, k.ErpConnectionID, k.ActorType, []string{k.Key})
		return err
	})
	if err := srv.Start(mux); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Shutdown()
	return nil
}
