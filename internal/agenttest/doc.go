// Package agenttest holds what the tests of a real agent share across
// packages: the test configuration, running an agent until the test ends,
// waiting for an engine and counting exported events. The fault tests scope
// each agent to the engines of their own (Scope), so that tests which run
// side by side never see, dial or count each other's engines. Only tests
// import it.
package agenttest
