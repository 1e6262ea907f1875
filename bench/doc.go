// Package bench is the benchmark harness for the datapath.
package bench
