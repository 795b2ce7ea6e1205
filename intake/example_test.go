package intake_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
)

// A producer submits a CSV export; the run can be submitted again safely. (miniredis stands
// in for Redis so that the example runs anywhere; the tests use a real redis-server.)
func ExampleProducer_Submit() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	p, err := intake.NewProducer(intake.ProducerConfig{Redis: rdb})
	if err != nil {
		panic(err)
	}
	export := "name;erp_key\r\nAcme;C-1001\r\nBeta;C-1002\r\nAcme again;C-1001\r\nBroken;\"C-\x01\"\r\n"
	spec := intake.RunSpec{Run: "customers-2026-11-27", ErpConnectionID: 3, ActorType: erpsync.ActorCustomer, BatchSize: 100}
	src := intake.Source{Name: "customers.csv", R: strings.NewReader(export), CSVColumn: "erp_key", CSVComma: ';'}

	sum, err := p.Submit(context.Background(), spec, src)
	if err != nil {
		panic(err)
	}
	fmt.Printf("read %d, valid %d, invalid %d, duplicates %d, batches enqueued %d\n",
		sum.Read, sum.Valid, sum.Invalid, sum.Duplicates, sum.BatchesEnqueued)
	for _, pr := range sum.Problems {
		fmt.Println(pr)
	}

	src.R = strings.NewReader(export)
	sum, _ = p.Submit(context.Background(), spec, src)
	fmt.Printf("again: batches enqueued %d, already present %d\n", sum.BatchesEnqueued, sum.BatchesPresent)
	// Output:
	// read 4, valid 3, invalid 1, duplicates 1, batches enqueued 1
	// customers.csv:4: key "C-1001": duplicate of line 2
	// customers.csv:5: key "C-\x01": contains control character U+0001 at byte 2, which XML 1.0 cannot carry
	// again: batches enqueued 0, already present 1
}
