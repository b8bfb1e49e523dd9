package rds_test

import (
	"os"
	"strings"
	"testing"
)

// TestRootModuleStaysLight: a user who `go get`s the module for rdsclient
// must not download Kubernetes' client libraries; code that needs them
// lives in nested modules (attach/kube).
func TestRootModuleStaysLight(t *testing.T) {
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, heavy := range []string{"k8s.io/client-go", "k8s.io/api ", "sigs.k8s.io/controller-runtime"} {
		if strings.Contains(string(mod), heavy) {
			t.Errorf("go.mod requires %s; move the code that needs it into a nested module", strings.TrimSpace(heavy))
		}
	}
}
