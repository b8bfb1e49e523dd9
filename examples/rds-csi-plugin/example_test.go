package main

import (
	"fmt"
)

// Every flag falls back to an environment variable named after it.
func Example_environment() {
	for _, f := range []string{"endpoint", "node-id", "rds-key-file", "metrics-address"} {
		fmt.Printf("--%s\t%s\n", f, envName(f))
	}
	// Output:
	// --endpoint	RDS_CSI_ENDPOINT
	// --node-id	RDS_CSI_NODE_ID
	// --rds-key-file	RDS_CSI_RDS_KEY_FILE
	// --metrics-address	RDS_CSI_METRICS_ADDRESS
}
