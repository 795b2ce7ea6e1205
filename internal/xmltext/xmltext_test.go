package xmltext

import (
	"encoding/xml"
	"io"
	"testing"
)

func TestAppendEscapedInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"plain", "abc", "abc"},
		{"specials", "<&>", "&lt;&amp;&gt;"},
		{"cr", "a\rb", "a&#xD;b"},
		{"nul", "a\x00b", "a\uFFFDb"},
		{"bad utf8", "a\xffb", "a\uFFFDb"},
		{"fffe", "a\uFFFEb", "a\uFFFDb"},
		{"real fffd", "a\uFFFDb", "a\uFFFDb"},
	}
	for _, tt := range tests {
		if got := string(AppendEscaped(nil, tt.in)); got != tt.want {
			t.Errorf("%s: AppendEscaped(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want bool
	}{{"abc", true}, {"tab\tnl\ncr\r", true}, {"a\x00b", false}, {"a\xffb", false}, {"a\uFFFEb", false}, {"Ærø-😀", true}} {
		if got := Valid(tt.in); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewDecoder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"byte order mark", "\uFEFF<a/>", true},
		{"declared UTF-8", `<?xml version="1.0" encoding="UTF-8"?><a/>`, true},
		{"declared ASCII", `<?xml version="1.0" encoding="us-ascii"?><a/>`, true},
		{"declared Latin-1", `<?xml version="1.0" encoding="latin1"?><a/>`, false},
		{"entity declared in a DOCTYPE", `<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>`, false},
		{"invalid UTF-8", "<a>\xff</a>", false},
	}
	for _, tt := range tests {
		d := NewDecoder([]byte(tt.in))
		var err error
		for err == nil {
			_, err = d.Token()
		}
		if ok := err == io.EOF; ok != tt.ok {
			t.Errorf("%s: decoding ends with %v, want success %v", tt.name, err, tt.ok)
		}
	}
}

func TestIsNil(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{`<a xmlns:i="` + XSI + `" i:nil="true"/>`, true},
		{`<a xmlns:q="` + XSI + `" q:nil=" 1 "/>`, true},
		{`<a xmlns:i="` + XSI + `" i:nil="false"/>`, false},
		{`<a nil="true"/>`, false},
		{`<a xmlns:i="urn:other" i:nil="true"/>`, false},
	} {
		tok, err := NewDecoder([]byte(tt.in)).Token()
		if err != nil {
			t.Fatal(err)
		}
		if got := IsNil(tok.(xml.StartElement)); got != tt.want {
			t.Errorf("IsNil(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
