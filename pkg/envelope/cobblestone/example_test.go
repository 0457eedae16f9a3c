package cobblestone_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
)

// exampleKey stands in for a seed unwrapped by the tenant's KMS.
var exampleKey = bytes.Repeat([]byte{7}, cobblestone.KeySize)

func Example() {
	context := []byte("tenant=acme asset=rec-42")

	var ciphertext bytes.Buffer
	w, err := cobblestone.NewWriter(&ciphertext, exampleKey, context)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(w, strings.NewReader("hello, recording")); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil { // seals the final chunk
		log.Fatal(err)
	}
	fmt.Println("ciphertext bytes:", ciphertext.Len())

	r, err := cobblestone.NewReader(&ciphertext, exampleKey, context)
	if err != nil {
		log.Fatal(err)
	}
	plaintext, err := io.ReadAll(r)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", plaintext)
	// Output:
	// ciphertext bytes: 88
	// hello, recording
}

func ExampleNewReaderAt() {
	context := []byte("tenant=acme asset=rec-42")
	message := bytes.Repeat([]byte("0123456789"), 5000) // 50 000 bytes, 4 chunks

	var ciphertext bytes.Buffer
	w, err := cobblestone.NewWriter(&ciphertext, exampleKey, context, cobblestone.WithConcurrency(2))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := w.Write(message); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	ra, err := cobblestone.NewReaderAt(bytes.NewReader(ciphertext.Bytes()), int64(ciphertext.Len()), exampleKey, context)
	if err != nil {
		log.Fatal(err)
	}
	size, err := ra.Size() // authenticates the length via the final chunk
	if err != nil {
		log.Fatal(err)
	}
	p := make([]byte, 12)
	if _, err := ra.ReadAt(p, 16380); err != nil { // spans chunks 0 and 1
		log.Fatal(err)
	}
	fmt.Println(size, string(p))
	// Output:
	// 50000 012345678901
}

func ExampleNewReader_wrongContext() {
	var ciphertext bytes.Buffer
	w, _ := cobblestone.NewWriter(&ciphertext, exampleKey, []byte("tenant=acme"))
	_, _ = w.Write([]byte("secret"))
	_ = w.Close()

	_, err := cobblestone.NewReader(&ciphertext, exampleKey, []byte("tenant=evil"))
	fmt.Println(errors.Is(err, cobblestone.ErrCommitment))
	// Output:
	// true
}

// A key broker checks the header and hands out only the message key; the
// viewer decrypts in raw mode without ever seeing the input key.
func ExampleOpenHeader() {
	context := []byte("tenant=acme asset=vm-7")
	var ciphertext bytes.Buffer
	w, _ := cobblestone.NewWriter(&ciphertext, exampleKey, context)
	_, _ = w.Write([]byte("voicemail"))
	_ = w.Close()
	ct := ciphertext.Bytes()

	// Broker side.
	mk, err := cobblestone.OpenHeader(exampleKey, context, ct[:cobblestone.HeaderSize])
	if err != nil {
		log.Fatal(err)
	}
	handed := mk.Bytes() // 44 bytes, sent over a protected channel
	mk.Destroy()
	fmt.Println(mk)

	// Viewer side.
	vk, err := cobblestone.MessageKeyFromBytes(handed)
	if err != nil {
		log.Fatal(err)
	}
	clear(handed)
	body := ct[cobblestone.HeaderSize:]
	ra, err := cobblestone.NewRawReaderAt(bytes.NewReader(body), int64(len(body)), vk)
	if err != nil {
		log.Fatal(err)
	}
	vk.Destroy()
	p := make([]byte, 4)
	if _, err := ra.ReadAt(p, 5); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(p))
	// Output:
	// cobblestone.MessageKey(redacted)
	// mail
}

func ExampleCiphertextSize() {
	for _, n := range []int64{0, 1, 16384, 1 << 20} {
		c := cobblestone.CiphertextSize(n)
		p, _ := cobblestone.PlaintextSize(c)
		fmt.Println(n, c, p)
	}
	_, err := cobblestone.PlaintextSize(56 + 16400) // final short chunk missing
	fmt.Println(errors.Is(err, cobblestone.ErrTruncated))
	// Output:
	// 0 72 0
	// 1 73 1
	// 16384 16472 16384
	// 1048576 1049672 1048576
	// true
}
