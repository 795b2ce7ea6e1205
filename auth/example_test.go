package auth_test

import (
	"context"
	"fmt"

	"github.com/erpresync/erpresync/auth"
)

// An on-site login: the ticket is fetched at the first Ticket call, shared by every caller
// and fetched again only when NetServer rejects it (Invalidate). The source prints without
// its password.
func ExampleNewPasswordAuth() {
	src, err := auth.NewPasswordAuth(auth.PasswordAuthConfig{
		BaseURL:  "https://crm.example.com/SuperOffice",
		UserName: "erpsync",
		Password: "correct horse battery staple",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// A transport calls src.Ticket(ctx) before each call and src.Invalidate(ticket) when
	// NetServer says the ticket is no longer valid.
	fmt.Println(auth.Describe(src))
	// Output:
	// auth.PasswordAuth{URL:"https://crm.example.com/SuperOffice/Remote/Services88/SoPrincipal.svc", UserName:"erpsync", Password:[REDACTED], Refreshes:0}
}

// A fixed ticket, for one call by hand: it cannot be renewed.
func ExampleNewStaticTicket() {
	src := auth.NewStaticTicket("7T:MQAyADMA")
	t, err := src.Ticket(context.Background())
	fmt.Println(len(t) > 0, err)
	fmt.Println(auth.Describe(src))
	// Output:
	// true <nil>
	// auth.StaticTicket{[REDACTED]}
}
