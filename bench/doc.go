// Package bench holds erpresync's whole-system benchmarks: real worker processes against
// a private redis-server and the simulator, each next to a baseline measured in the same
// run (bench/naive, a worker written the way one first writes it with asynq). `make bench`
// runs them with the package benchmarks and BENCHMARKS.md records the medians.
package bench
