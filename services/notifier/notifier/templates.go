package notifier

import (
	"bytes"
	"embed"
	"errors"
	htmltemplate "html/template"
	"text/template"
	"time"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var funcs = map[string]any{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "(unknown time)"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"fail": func(msg string) (string, error) { return "", errors.New(msg) },
}

var (
	noticeText = template.Must(template.New("notice.txt.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/notice.txt.tmpl"))
	noticeHTML = htmltemplate.Must(htmltemplate.New("notice.html.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/notice.html.tmpl"))
	digestText = template.Must(template.New("digest.txt.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/digest.txt.tmpl"))
	digestHTML = htmltemplate.Must(htmltemplate.New("digest.html.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/digest.html.tmpl"))
)

// TemplateError is a notice that could not be rendered: its data does not
// fit its kind's template. It is permanent (dead-lettered as
// template_failed); the other notices go on.
type TemplateError struct {
	Kind Kind
	Err  error
}

func (e *TemplateError) Error() string {
	return "rendering the " + string(e.Kind) + " email: " + e.Err.Error()
}
func (e *TemplateError) Unwrap() error { return e.Err }

// render returns the text and HTML parts of n.
func render(n *Notice) (text, html string, err error) {
	if err := n.validate(); err != nil {
		return "", "", &TemplateError{Kind: n.Kind, Err: err}
	}
	var t, h bytes.Buffer
	if err := noticeText.Execute(&t, n); err != nil {
		return "", "", &TemplateError{Kind: n.Kind, Err: err}
	}
	if err := noticeHTML.Execute(&h, n); err != nil {
		return "", "", &TemplateError{Kind: n.Kind, Err: err}
	}
	return t.String(), h.String(), nil
}

// Digest is several notices of one subject (a key's status changes, a
// tenant's rejections) sent as one email at the end of a window.
type Digest struct {
	TenantID string
	Kind     Kind
	KeyURI   string
	From, To time.Time
	Window   time.Duration
	Items    []*Notice
	Subject  string
}

// Last is the latest item.
func (d *Digest) Last() *Notice {
	if len(d.Items) == 0 {
		return nil
	}
	return d.Items[len(d.Items)-1]
}

func renderDigest(d *Digest) (text, html string, err error) {
	if len(d.Items) == 0 {
		return "", "", &TemplateError{Kind: d.Kind, Err: errors.New("empty digest")}
	}
	var t, h bytes.Buffer
	if err := digestText.Execute(&t, d); err != nil {
		return "", "", &TemplateError{Kind: d.Kind, Err: err}
	}
	if err := digestHTML.Execute(&h, d); err != nil {
		return "", "", &TemplateError{Kind: d.Kind, Err: err}
	}
	return t.String(), h.String(), nil
}

// validate checks the fields every template of n's kind needs, so a bad
// event fails with a clear error instead of a message with holes.
func (n *Notice) validate() error {
	need := func(field, v string) error {
		if v == "" {
			return errors.New(field + " is empty")
		}
		return nil
	}
	errs := []error{need("tenant", n.TenantID), need("subject", n.Subject)}
	switch n.Kind {
	case KindKeyStatus:
		errs = append(errs, need("key", n.KeyURI), need("status", n.Status), need("what Keyward is doing", n.Doing))
	case KindKeyEnrolled:
		errs = append(errs, need("key", n.KeyURI))
	case KindRotationStarted:
		errs = append(errs, need("from key", n.FromKeyURI), need("to key", n.ToKeyURI))
	case KindRotationCompleted, KindDeprovisionCompleted:
		if len(n.Keys) == 0 {
			errs = append(errs, errors.New("no key to disable is named"))
		}
	case KindContentRejected:
		errs = append(errs, need("asset", n.AssetID))
	}
	return errors.Join(errs...)
}
