package intakeapi

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes: openapi.json is a valid OpenAPI 3 document (loadDoc), every
// route is documented with its method, and every documented operation is served: a
// request to it reaches its handler, not the router's 404 or 405. (Every answer the other
// tests get is also checked against the document's schemas, in env.do.)
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	var documented, served []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented = append(documented, method+" "+path)
			public := op.Security != nil && len(*op.Security) == 0
			i := slices.IndexFunc(routes, func(r route) bool { return r.method == method && r.path == path })
			if i >= 0 && routes[i].public != public {
				t.Errorf("%s %s: public %v in the routes, %v in openapi.json", method, path, routes[i].public, public)
			}
			if !public && op.Responses.Map()["401"] == nil {
				t.Errorf("%s %s: needs a token, but 401 is not documented", method, path)
			}
		}
	}
	for _, r := range routes {
		served = append(served, r.method+" "+r.path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("openapi.json documents\n  %s\nthe API serves\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}

	e := newEnv(t, nil)
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		path = strings.NewReplacer("{run}", "some-run", "{tenant}", "Cust1").Replace(path)
		r := e.do(method, path, "application/json", token, strings.NewReader("{}"))
		if r.code == http.StatusNotFound && strings.Contains(string(r.body), "no such route") || r.code == http.StatusMethodNotAllowed {
			t.Errorf("%s: documented but not served: %d %s", op, r.code, r.body)
		}
	}
}
