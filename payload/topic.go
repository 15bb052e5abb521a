package payload

import (
	"fmt"
	"strings"
)

// TopicRoot is the first two levels of every topic of MQTT contract v1.
const TopicRoot = "gw/v1"

// Topic suffixes of MQTT contract v1.
const (
	SuffixTelemetry = "telemetry"
	SuffixEvents    = "events"
	SuffixStatus    = "status"
	SuffixCmd       = "cmd"
	SuffixCmdReply  = "cmd-reply"
)

// Topic is a parsed gateway topic: gw/v1/{site}/{gateway}/{suffix}[/{id}].
// The delivery suffixes (SuffixAck, SuffixDropped) are in ack.go.
type Topic struct {
	Site    string
	Gateway string
	Suffix  string
	ID      string // command id for cmd and cmd-reply
	Kind    Kind   // for telemetry and events
}

// Base returns gw/v1/{site}/{gateway}.
func Base(site, gateway string) string { return TopicRoot + "/" + site + "/" + gateway }

// TopicFor returns the topic a message of kind k is published on.
func TopicFor(site, gateway string, k Kind) string {
	if k == Event {
		return Base(site, gateway) + "/" + SuffixEvents
	}
	return Base(site, gateway) + "/" + SuffixTelemetry
}

// StatusTopic returns the retained status (birth and Last Will) topic.
func StatusTopic(site, gateway string) string { return Base(site, gateway) + "/" + SuffixStatus }

// ParseTopic splits a topic of MQTT contract v1 and checks its identifiers.
func ParseTopic(topic string) (Topic, error) {
	parts := strings.Split(topic, "/")
	if len(parts) < 5 || parts[0] != "gw" || parts[1] != "v1" {
		return Topic{}, fmt.Errorf("topic %q: want gw/v1/{site}/{gateway}/{telemetry|events|status|ack|dropped|cmd/ID|cmd-reply/ID}", topic)
	}
	t := Topic{Site: parts[2], Gateway: parts[3], Suffix: parts[4]}
	if !ValidID(t.Site) {
		return Topic{}, fmt.Errorf("topic %q: site %q: want [a-z0-9-]{1,64}", topic, t.Site)
	}
	if !ValidID(t.Gateway) {
		return Topic{}, fmt.Errorf("topic %q: gateway %q: want [a-z0-9-]{1,64}", topic, t.Gateway)
	}
	switch t.Suffix {
	case SuffixTelemetry, SuffixEvents, SuffixStatus, SuffixAck, SuffixDropped:
		if len(parts) != 5 {
			return Topic{}, fmt.Errorf("topic %q: nothing may follow %q", topic, t.Suffix)
		}
		if t.Suffix == SuffixTelemetry {
			t.Kind = Telemetry
		} else if t.Suffix == SuffixEvents {
			t.Kind = Event
		}
	case SuffixCmd, SuffixCmdReply:
		if len(parts) != 6 || parts[5] == "" {
			return Topic{}, fmt.Errorf("topic %q: want %s/{id}", topic, t.Suffix)
		}
		t.ID = parts[5]
	default:
		return Topic{}, fmt.Errorf("topic %q: unknown suffix %q", topic, t.Suffix)
	}
	return t, nil
}
