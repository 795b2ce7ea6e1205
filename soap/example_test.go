package soap_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/erpresync/erpresync/auth"
	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/soap"
)

func ExampleClient_ForceResyncExternal() {
	// A stand-in for NetServer that answers with the WCF-shaped success of the protocol
	// reference (section 4.3).
	success, _ := os.ReadFile("testdata/response_success.xml")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.Write(success)
	}))
	defer srv.Close()

	client, err := soap.New(soap.Config{
		BaseURL:  srv.URL + "/Cust12345", // e.g. https://sod.superoffice.com/Cust12345
		AppToken: "client-secret",
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
	fmt.Println(resp.IsOk, resp.Status, resp.Changes.Updated)
	out, _ := json.Marshal(resp)
	fmt.Println(string(out))
	// Output:
	// true Ok [{contact 123}]
	// {"is_ok":true,"status":"Ok","error_code":"","user_explanation":"","tech_explanation":"","changes":{"added":[],"updated":[{"table":"contact","record_id":123}],"deleted":[]}}
}
