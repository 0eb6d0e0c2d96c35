package annotations

import (
	"go/ast"
	"go/token"
	"strconv"
	"strings"
)

// A word is one word of an annotation, and where it starts.
type word struct {
	text string
	pos  token.Pos
}

func (w word) end() token.Pos { return w.pos + token.Pos(len(w.text)) }

// directive is one //kiln: comment, split into words.
type directive struct {
	comment *ast.Comment
	verb    string // "service" in //kiln:service
	verbEnd token.Pos
	words   []word
	// unterminated is where a quoted string that does not end starts, or
	// token.NoPos.
	unterminated token.Pos
}

func (d *directive) pos() token.Pos { return d.comment.Slash }

// quote is the quote that starts the unterminated string literal.
func (d *directive) quote() byte { return d.comment.Text[d.unterminated-d.comment.Slash] }

// readDirective splits c, which starts with prefix.
func readDirective(c *ast.Comment) *directive {
	rest := c.Text[len(prefix):]
	n := 0
	for n < len(rest) && !isSpace(rest[n]) {
		n++
	}
	d := &directive{comment: c, verb: rest[:n], verbEnd: c.Slash + token.Pos(len(prefix)+n)}
	d.words, d.unterminated = splitWords(rest[n:], d.verbEnd)
	return d
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\r' || b == '\v' || b == '\f'
}

// splitWords splits s, which starts at base, at spaces outside Go string
// literals. A literal that does not end runs to the end of s, and its start
// is returned.
func splitWords(s string, base token.Pos) (words []word, unterminated token.Pos) {
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		start := i
		for i < len(s) && !isSpace(s[i]) {
			switch s[i] {
			case '"':
				j := i + 1
				for j < len(s) && s[j] != '"' {
					if s[j] == '\\' {
						j++
					}
					j++
				}
				if j >= len(s) {
					if unterminated == token.NoPos {
						unterminated = base + token.Pos(i)
					}
					i = len(s)
				} else {
					i = j + 1
				}
			case '`':
				j := strings.IndexByte(s[i+1:], '`')
				if j < 0 {
					if unterminated == token.NoPos {
						unterminated = base + token.Pos(i)
					}
					i = len(s)
				} else {
					i += j + 2
				}
			default:
				i++
			}
		}
		words = append(words, word{text: s[start:i], pos: base + token.Pos(start)})
	}
	return words, unterminated
}

// isQuoted says s is meant as a Go string literal.
func isQuoted(s string) bool { return s != "" && (s[0] == '"' || s[0] == '`') }

// unquote reads s as a Go string literal when it is one; ok is false when s
// starts like one but is not.
func unquote(s string) (v string, ok bool) {
	if !isQuoted(s) {
		return s, true
	}
	v, err := strconv.Unquote(s)
	return v, err == nil
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// suggest is the candidate closest to s when it is close enough to be a
// likely typo, or "".
func suggest(s string, candidates []string) string {
	if len(s) > 64 {
		return ""
	}
	norm := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	best, bestD := "", 3
	for _, c := range candidates {
		d := editDistance(norm, c)
		if d < bestD && d < len(c) {
			best, bestD = c, d
		}
	}
	return best
}

// didYouMean is " (did you mean X?)" for a likely typo of one of
// candidates, or "".
func didYouMean(s string, candidates []string) string {
	if c := suggest(s, candidates); c != "" && c != s {
		return " (did you mean " + c + "?)"
	}
	return ""
}

// list joins words as English does: "a, b and c".
func list(words []string, and string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + and + " " + words[len(words)-1]
}
