package readmetest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestBlocks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "README.md")
	doc := "# x\n\n```sh\necho one   # a comment's quote\ncurl -d '{\"a\": \"#b\"}' \\\n  http://h/#x\n```\n\n" +
		"<!-- readme-test: not run: needs a real tenant -->\n```sh\ncurl https://tenant\n```\n\n```go\nx := 1\n```\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	bs, err := Blocks(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].NotRun != "" || bs[1].NotRun != "needs a real tenant" {
		t.Fatalf("blocks %+v", bs)
	}
	want := []string{"echo one", `curl -d '{"a": "#b"}'    http://h/#x`}
	if got := Lines(bs); !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	all, recognised, err := Markers(path)
	if err != nil || all != 1 || recognised != 1 {
		t.Errorf("markers %d, recognised %d, %v", all, recognised, err)
	}
}

func TestStripComment(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"  # only a comment":                  "",
		"make trial   # builds bin/":          "make trial",
		"echo 'a # b'  # c":                   "echo 'a # b'",
		"curl 'http://h/?q=1#frag'":           "curl 'http://h/?q=1#frag'",
		"export X=abc   # the worker's token": "export X=abc",
	} {
		if got := StripComment(in); got != want {
			t.Errorf("StripComment(%q) = %q, want %q", in, got, want)
		}
	}
}
