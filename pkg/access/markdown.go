package access

import (
	"fmt"
	"strings"
)

// Markdown renders the matrix as the identity table of docs/security.md:
// each role, its account, who holds it, what it may use and what it must
// not do. TestSecurityDocIsGenerated keeps the doc equal to it.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| role | account | who | may publish / request | may subscribe | must not (refused by the server) |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, s := range Matrix {
		scope := ""
		switch {
		case s.Tenant:
			scope = " (one tenant)"
		case s.Scoped:
			scope = " (services, purposes)"
		}
		sub := append([]string{}, s.Grants.Sub...)
		if s.Account != AccountServices {
			sub = append(sub, "_INBOX.<name>.>")
		}
		resp := ""
		if s.Grants.Responses {
			resp = " + replies to requests it receives"
		}
		fmt.Fprintf(&b, "| `%s`%s | %s | %s | %s%s | %s | %s |\n",
			s.Role, scope, s.Account, s.Summary, codeList(summarize(s.Grants.Pub)), resp, codeList(sub), strings.Join(s.MustNot, "; "))
	}
	return b.String()
}

// summarize folds the JetStream API subjects of one stream into
// "<stream>: info, get, consume" so the table stays readable; the full
// lists are in the credentials (`keyward access show`).
func summarize(subjects []string) []string {
	var out []string
	apis := map[string][]string{}
	var order []string
	for _, s := range subjects {
		stream, op, ok := jsAPI(s)
		if !ok {
			out = append(out, s)
			continue
		}
		if _, seen := apis[stream]; !seen {
			order = append(order, stream)
		}
		if !contains(apis[stream], op) {
			apis[stream] = append(apis[stream], op)
		}
	}
	for _, st := range order {
		out = append(out, st+" ("+strings.Join(apis[st], ", ")+")")
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// jsAPI names the stream and the kind of operation of a JetStream API or
// ack subject.
func jsAPI(s string) (stream, op string, ok bool) {
	t := strings.Split(s, ".")
	switch {
	case strings.HasPrefix(s, "$JS.API.STREAM.MSG.GET.") && len(t) == 6:
		return t[5], "get", true
	case strings.HasPrefix(s, "$JS.API.DIRECT.GET.") && len(t) >= 5:
		return t[4], "get", true
	case strings.HasPrefix(s, "$JS.API.STREAM.") && len(t) == 5:
		return t[4], strings.ToLower(t[3]), true
	case strings.HasPrefix(s, "$JS.API.CONSUMER.INFO.") && len(t) == 6 && t[5] != "*":
		return t[4], "consumer " + t[5] + " info", true
	case (strings.HasPrefix(s, "$JS.ACK.") || strings.HasPrefix(s, "$JS.FC.")) && len(t) >= 3:
		return t[2], "consume", true
	case (strings.HasPrefix(s, "$JS.API.CONSUMER.MSG.NEXT.") || strings.HasPrefix(s, "$JS.API.CONSUMER.DURABLE.")) && len(t) >= 6:
		return t[5], "consume", true
	case strings.HasPrefix(s, "$JS.API.CONSUMER.") && len(t) >= 5:
		return t[4], "consume", true
	}
	return "", "", false
}

func codeList(s []string) string {
	if len(s) == 0 {
		return "—"
	}
	return "`" + strings.Join(s, "`, `") + "`"
}
