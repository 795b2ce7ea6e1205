package xmltext

import "testing"

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
