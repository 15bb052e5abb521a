package main

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/luling-edge/luling/internal/testenv"
)

// syncBuf is written by cloudd while the test reads it.
type syncBuf = testenv.Buffer

func itoa(i int) string { return strconv.Itoa(i) }

func closeBody(r *http.Response) {
	if r != nil {
		r.Body.Close()
	}
}

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, what, cond)
}

func publish(addr, user, pass, topic, body string) error {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("pub-" + user).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Publish(topic, 1, false, body)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish: timeout")
	}
	return tok.Error()
}
