// Command planted plays a container engine that plants a symbolic link: it
// listens on /plant/docker.sock under the name dockerd, then moves /plant
// away and puts a symlink to a host path (its argument) in its place. The
// path /proc/net/unix reports for its socket, /plant/docker.sock, then
// leads to HOSTPATH/docker.sock of whoever follows it from outside the
// container without resolving it inside the container's root. It prints
// "planted" when the link is in place and accepts (and closes) connections
// until killed.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerd HOSTPATH")
		os.Exit(2)
	}
	if err := os.MkdirAll("/plant", 0o755); err != nil {
		fail(err)
	}
	l, err := net.Listen("unix", "/plant/docker.sock")
	if err != nil {
		fail(err)
	}
	if err := os.Rename("/plant", "/plant.real"); err != nil {
		fail(err)
	}
	if err := os.Symlink(os.Args[1], "/plant"); err != nil {
		fail(err)
	}
	fmt.Println("planted")
	for {
		c, err := l.Accept()
		if err != nil {
			fail(err)
		}
		c.Close()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
