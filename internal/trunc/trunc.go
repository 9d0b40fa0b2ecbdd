// Package trunc cuts strings that logs and answers quote from a client
// (a request's path, a header, a metric's help text) to a bound in bytes.
package trunc

import "strings"

// UTF8 returns s if it is at most n bytes long, else its first n bytes
// with the UTF-8 sequence the cut splits dropped (and any other invalid
// bytes among them: strings.ToValidUTF8), so that the result is valid
// UTF-8 of at most n bytes.
func UTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
