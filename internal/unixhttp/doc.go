// Package unixhttp speaks HTTP over a unix socket: engine APIs and agentd's
// own status API are HTTP served on a socket file.
//
// It owns only the connection: every request of a client or transport made
// here dials the one socket it was built for (through unixsock.Dial),
// whatever host the request URL names (callers use a placeholder such as
// "http://d/status"). It does not know any API, status code or body format;
// callers check those themselves.
package unixhttp
