package mail

import (
	netmail "net/mail"
	"strings"
)

func netmailRead(s string) (netmail.Header, error) {
	m, err := netmail.ReadMessage(strings.NewReader(s))
	if err != nil {
		return nil, err
	}
	return m.Header, nil
}
