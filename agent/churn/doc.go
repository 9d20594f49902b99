// Package churn holds agentd's churn fault test: 1,000 container lifecycles
// through a real agent, after which the agent's goroutines, open files and
// heap must be back to their level before. Those are measured on the whole
// test process, so the test lives in a package of its own: its process holds
// this one agent and nothing else, while the other fault tests (package
// agent's) run side by side in theirs. It has no code besides the test.
package churn
