package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
)

// The tool prints the plugin's rds_csi_* gauges after each step; counters,
// histograms, other metrics and the otel_scope_* labels are left out.
func Example_scrapeGauges() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# TYPE rds_csi_nvme_connections_active gauge
rds_csi_nvme_connections_active{otel_scope_name="github.com/srvlab/rds-csi"} 2
# TYPE rds_csi_rds_connection_state gauge
rds_csi_rds_connection_state{address="10.0.0.5:22",otel_scope_name="github.com/srvlab/rds-csi"} 1
# TYPE rds_csi_volume_operations_total counter
rds_csi_volume_operations_total{operation="CreateVolume",status="OK"} 3
# TYPE go_goroutines gauge
go_goroutines 12
`)
	}))
	defer srv.Close()

	lines, err := scrapeGauges(context.Background(), srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// rds_csi_nvme_connections_active = 2
	// rds_csi_rds_connection_state{address="10.0.0.5:22"} = 1
}
