// Package rpc serves Keyward's request-reply endpoints — the enrollment
// service, the key broker and call admission — as NATS micro services
// (github.com/nats-io/nats.go/micro), so they are found and watched like any
// other NATS service: `nats micro ls`, `nats micro info keyward-key-broker`,
// `nats micro stats keyward-key-broker` ($SRV.PING, $SRV.INFO, $SRV.STATS).
//
// Start builds one service with one endpoint from a Config: the service
// name, its version (svc.Version made SemVer, see SemVer), a description,
// the queue group every instance joins (each request is answered by one
// instance) and the endpoint's subject with its wildcard tenant token, e.g.
// keyward.key.unwrap.*. The *nats.Conn it serves on is given by the caller
// and is the only connection the package uses; whatever a handler needs for
// its work (JetStream, KV, a publisher) it brings itself.
//
// # Handlers and replies
//
// A Handler decides one request and answers it once, with Respond (a JSON
// body) or RespondError (the same JSON body, plus micro's error headers
// Nats-Service-Error-Code with the typed code, e.g. "asset_not_found", and
// Nats-Service-Error with the message). Keyward's clients read the body,
// whose error object carries the same code; generic tools read the headers.
// The request's headers — traceparent, and the Nats-Request-Info the server
// sets — are available to the handler (Request.Header). A handler that
// returns without answering, or panics, is answered with CodeInternal.
//
// # Concurrency
//
// micro calls an endpoint's handler from its subscription's goroutine, one
// request at a time. Config.Concurrency 0 keeps that: the handler runs
// inline (the fastest path for a handler without I/O, such as call
// admission). Concurrency N runs up to N handlers at once in their own
// goroutines; when N are running, the subscription waits for one to finish
// before it takes the next request, so a burst queues in the connection's
// pending buffer (nats.go's default subscription pending limits) and is
// never dropped by the package.
//
// # Statistics
//
// micro counts num_requests, num_errors and processing_time in its STATS
// reply when it sees the answer before the handler returns: exactly so for
// inline endpoints. For an endpoint with Concurrency N the answer is sent
// after micro's handler has returned, so micro counts the request when it
// is handed to the pool (processing_time is the time waiting for a slot)
// and cannot count its error; the endpoint's "data" in STATS (Stats) holds
// this package's own counts for every endpoint: requests answered, errors
// by code, the last error, requests in flight and the bound.
//
// # Stopping
//
// Stop stops the micro service (its subscriptions are drained: the server
// routes no new request to this instance), waits until every request
// already delivered to the connection has reached the handler (a flush,
// then a barrier behind them; at most Config.DrainTimeout), then waits for
// every handler in flight to answer. A request this instance received is
// answered, not lost, as long as the connection stays open until Stop
// returns.
//
// # Errors
//
// Start returns micro's configuration errors (micro.ErrConfigValidation:
// a name, version, subject or queue group micro refuses) and subscription
// errors. Respond and RespondError return ErrAnswered on a second answer
// and the publish error of the reply otherwise; a failed reply is logged
// and counted (Stats.ReplyFailures).
//
// # Telemetry
//
// With Config.Tracer set, each request gets a process span (parent from
// the request's traceparent, destination Config.SpanSubject) carried by the
// handler's context and ended after the answer.
package rpc
