// Package unixhttp speaks HTTP over a unix socket: the Docker, libpod and
// agentd status APIs are all HTTP served on a socket file.
//
// It owns only the connection: every request of a client or transport made
// here dials the one socket it was built for, whatever host the request URL
// names (callers use a placeholder such as "http://d/_ping"). It does not know
// any API, status code or body format; callers check those themselves.
package unixhttp
