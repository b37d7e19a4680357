package main

import "agentrelay/relay"

// impls are the relay implementations --impl chooses from.
var impls = map[string]func(relay.Options) (server, error){
	"reactor": func(o relay.Options) (server, error) { return relay.New(o) },
}
