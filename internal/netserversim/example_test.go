package netserversim_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/erpresync/erpresync/internal/netserversim"
)

// A test starts the simulator, sends ForceResyncExternal as a SOAP 1.1 client would, and
// checks what the simulator counted against ExpectedChange.
func Example() {
	sim := netserversim.MustStart(netserversim.Config{})
	defer sim.Close()
	ticket := sim.IssueTicket()

	envelope := `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <Credentials xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88"><Ticket>` + ticket + `</Ticket></Credentials>
  </s:Header>
  <s:Body>
    <ForceResyncExternal xmlns="http://www.superoffice.net/ws/crm/NetServer/Services88">
      <ErpConnectionId>3</ErpConnectionId>
      <ErpActorType>Customer</ErpActorType>
      <ExternalKeys xmlns:a="http://schemas.microsoft.com/2003/10/Serialization/Arrays">
        <a:string>10001</a:string>
        <a:string>10002</a:string>
      </ExternalKeys>
    </ForceResyncExternal>
  </s:Body>
</s:Envelope>`
	req, _ := http.NewRequest(http.MethodPost, sim.URL+"/Remote/Services88/ErpSync.svc", strings.NewReader(envelope))
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", `"`+netserversim.ActionForceResyncExternal+`"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	fmt.Println(resp.StatusCode, strings.Contains(string(body), "<IsOk>true</IsOk>"))
	fmt.Println("resynced:", sim.ResyncCount("10001"), sim.ResyncCount("10002"))
	c := netserversim.ExpectedChange(netserversim.ActorCustomer, "10001")
	fmt.Println("10001 →", c.Table, c.Kind, sim.Counts().ChangeCount(c.Table, c.Kind) >= 1)
	// Output:
	// 200 true
	// resynced: 1 1
	// 10001 → contact added true
}
