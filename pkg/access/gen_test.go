package access

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated table in docs/security.md")

const (
	docPath    = "../../docs/security.md"
	beginTable = "<!-- BEGIN GENERATED: pkg/access Markdown(); go test ./access -run TestSecurityDocIsGenerated -update-docs -->\n"
	endTable   = "<!-- END GENERATED -->\n"
)

// TestSecurityDocIsGenerated keeps the identity table of docs/security.md
// equal to the matrix: nothing else writes permissions by hand.
func TestSecurityDocIsGenerated(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, beginTable), strings.Index(doc, endTable)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated table between %q and %q", docPath, beginTable, endTable)
	}
	want := doc[:i+len(beginTable)] + Markdown() + doc[j:]
	if want == doc {
		return
	}
	if *updateDocs {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is stale: run (cd pkg && go test ./access -run TestSecurityDocIsGenerated -update-docs)", docPath)
}
