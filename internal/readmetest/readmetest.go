// Package readmetest reads the shell commands of the README for the tests that run them
// (the worker's, enqueue's and the intake API's), so that every such test reads the same
// blocks by the same rule.
//
// A ```sh block is run by the tests. A block that cannot be run as shown (it needs a real
// SuperOffice tenant, say) is marked by the line
//
//	<!-- readme-test: not run: REASON -->
//
// directly before its opening fence; the tests skip it and log the reason.
package readmetest

import (
	"os"
	"regexp"
	"strings"
)

// Block is one ```sh block of the README.
type Block struct {
	// Text is the block's content, as written.
	Text string
	// NotRun is the reason of a block marked as not run by the tests; empty for the others.
	NotRun string
}

var (
	blockRE  = regexp.MustCompile("(?s)(?:<!-- readme-test: not run: ([^\n]*?) -->\n)?```sh\n(.*?)```")
	markerRE = regexp.MustCompile(`<!-- readme-test:[^\n]*-->`)
)

// Blocks returns the ```sh blocks of the Markdown file at path, in order.
func Blocks(path string) ([]Block, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bs []Block
	for _, m := range blockRE.FindAllStringSubmatch(string(raw), -1) {
		bs = append(bs, Block{Text: m[2], NotRun: strings.TrimSpace(m[1])})
	}
	return bs, nil
}

// Markers returns every readme-test marker of the file, for a test to check that each one
// is spelled so that Blocks sees it (directly before a ```sh fence, with a reason).
func Markers(path string) (all, recognised int, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	all = len(markerRE.FindAll(raw, -1))
	for _, m := range blockRE.FindAllStringSubmatch(string(raw), -1) {
		if strings.TrimSpace(m[1]) != "" {
			recognised++
		}
	}
	return all, recognised, nil
}

// Lines returns the lines of the blocks that are run, in order (see Block.Lines).
func Lines(bs []Block) []string {
	var lines []string
	for _, b := range bs {
		if b.NotRun == "" {
			lines = append(lines, b.Lines()...)
		}
	}
	return lines
}

// Lines returns the block's lines: continuation lines joined, trailing comments and
// surrounding blanks removed, empty lines dropped.
func (b Block) Lines() []string {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(b.Text, "\\\n", " "), "\n") {
		if l = StripComment(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// StripComment removes a trailing `# comment` (a `#` after a blank, outside quotes) and
// surrounding blanks.
func StripComment(line string) string {
	var quote rune
	prev := ' '
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (prev == ' ' || prev == '\t'):
			return strings.TrimSpace(line[:i])
		}
		prev = r
	}
	return strings.TrimSpace(line)
}
