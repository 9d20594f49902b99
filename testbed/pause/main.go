// Command pause is the sandbox ("pause") image for containerd's CRI plugin in the
// testbed: no registry is reachable, so the image is built locally from this
// static binary. It sleeps until SIGINT or SIGTERM and then exits 0.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
