package rest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/rest"
)

func ExampleClient_ForceResyncExternal() {
	// A stand-in for the WebAPI that answers with a PluginResponse.
	success, _ := os.ReadFile("testdata/reply_success.json")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(success)
	}))
	defer srv.Close()

	client, err := rest.New(rest.Config{
		BaseURL:  srv.URL + "/Cust12345", // e.g. https://sod2.superoffice.com/Cust12345
		AppToken: "client-secret",        // sent as SO-AppToken
		Auth:     auth.NewStaticTicket("7T:1234abcxyzExample=="),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, err := client.ForceResyncExternal(context.Background(), 3, erpsync.ActorCustomer, []string{"10001", "10002"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.IsOk, resp.Status, resp.Changes.Added, resp.Changes.Updated)
	// Output:
	// true Ok [{contact 12}] [{person 34} {person 35}]
}
