package mail_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/pkg/mail"
)

func ExampleParseURL() {
	cfg, err := mail.ParseURL("smtp://alerts%40example.com:s3cr%40t@smtp.example.com?pool=4")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Host, cfg.Port, cfg.TLS, cfg.Auth, cfg.PoolSize, cfg.Username)
	fmt.Println(cfg) // the password is never printed

	_, err = mail.ParseURL("smtp://alerts:s3cret@smtp.example.com:5870000")
	fmt.Println(err)
	// Output:
	// smtp.example.com 587 starttls plain 4 alerts@example.com
	// smtp://alerts%40example.com:xxxxx@smtp.example.com:587?tls=starttls&pool=4
	// mail: SMTP URL port "5870000": want a number from 1 to 65535, e.g. 587
}

func ExampleNewFileSink() {
	dir, _ := os.MkdirTemp("", "outbox")
	defer os.RemoveAll(dir)
	sink, _ := mail.NewFileSink(dir)
	path, err := sink.Send(context.Background(), &mail.Message{
		MessageID: "kw.evt-42.3f9a@keyward",
		From:      "Keyward <keyward@example.com>",
		To:        "ops@example.com",
		Subject:   "Key kms-1 was disabled",
		Text:      "Key kms-1 was disabled at 12:00 UTC.",
		Headers:   map[string]string{"X-Keyward-Event": "dev.keyward.key.status.changed.v1"},
	})
	fmt.Println(filepath.Base(path), err, mail.IsPermanent(err))

	_, err = sink.Send(context.Background(), &mail.Message{From: "keyward@example.com", To: "ops@example.com", Subject: "a\r\nBcc: x@example.com", Text: "t"})
	fmt.Println(mail.IsPermanent(err))
	// Output:
	// kw.evt-42.3f9a@keyward.eml <nil> false
	// true
}
