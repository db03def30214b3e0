package monitoring

import (
	"fmt"
	"sort"
	"strings"
)

// keywords are PromQL words that are not metric names when they stand
// alone: binary operators, modifiers, aggregations and the numbers Inf and
// NaN.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true,
	// Aggregations may be followed by "by (...)" before their parentheses.
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelListWords precede a parenthesised list of label names.
var labelListWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// MetricNames returns the metric names a PromQL expression selects, sorted
// and without duplicates: identifiers outside strings, label matchers,
// range brackets and label lists that are not called as functions and are
// not keywords. It is no PromQL parser (promtool checks the syntax); it
// lists names so that a test can check each is exported. An unterminated
// string, brace or bracket is an error naming its offset.
func MetricNames(expr string) ([]string, error) {
	seen := map[string]bool{}
	var open []int // offsets of unclosed parentheses
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '(':
			open = append(open, i)
			i++
		case c == ')':
			if len(open) == 0 {
				return nil, fmt.Errorf("offset %d: ')' closes nothing", i)
			}
			open = open[:len(open)-1]
			i++
		case c == '}' || c == ']':
			return nil, fmt.Errorf("offset %d: %q closes nothing", i, c)
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			end, err := skipGroup(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#': // comment to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdentPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n' || expr[k] == '\r') {
				k++
			}
			called := k < len(expr) && expr[k] == '('
			switch {
			case labelListWords[strings.ToLower(word)] && called:
				end, err := skipGroup(expr, k)
				if err != nil {
					return nil, err
				}
				j = end
			case called, keywords[strings.ToLower(word)]:
			default:
				seen[word] = true
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			// A number or a duration (5m, 1e3, 0x1f): skip it whole.
			for i < len(expr) && (isIdentPart(expr[i]) || expr[i] == '.') {
				i++
			}
		default:
			i++
		}
	}
	if len(open) > 0 {
		return nil, fmt.Errorf("offset %d: '(' never closed", open[len(open)-1])
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// skipString returns the offset after the string literal starting at i.
func skipString(expr string, i int) (int, error) {
	quote := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && quote != '`':
			j++
		case expr[j] == quote:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("offset %d: unterminated string %s", i, expr[i:])
}

// skipGroup returns the offset after the bracketed group ({...}, [...] or
// (...)) opening at i, strings inside included.
func skipGroup(expr string, i int) (int, error) {
	closing := map[byte]byte{'{': '}', '[': ']', '(': ')'}
	want := []byte{closing[expr[i]]}
	for j := i + 1; j < len(expr); j++ {
		switch c := expr[j]; {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case c == '{' || c == '[' || c == '(':
			want = append(want, closing[c])
		case c == want[len(want)-1]:
			want = want[:len(want)-1]
			if len(want) == 0 {
				return j + 1, nil
			}
		case c == '}' || c == ']' || c == ')':
			return 0, fmt.Errorf("offset %d: %q closes %q opened at offset %d", j, c, expr[i], i)
		}
	}
	return 0, fmt.Errorf("offset %d: %q never closed", i, expr[i])
}
