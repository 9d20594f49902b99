// Package packaging holds no Go code of its own: it is the home of agentd's
// .deb and .rpm build (build.sh, nfpm.yaml, maintainer scripts, the default
// configuration) and of the tests that install those packages on the
// testbed's systemd host.
package packaging
