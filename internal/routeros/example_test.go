package routeros_test

import (
	"fmt"

	"github.com/srvlab/rds-csi/internal/routeros"
)

func ExampleParseDetail() {
	out := "Flags: X - disabled\r\n" +
		" 0  type=file slot=\"pvc-1\" size=53 687 091 200\r\n" +
		"               file-path=/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f\r\n" +
		"               12f.img file-size=50.0GiB\r\n"
	entries, err := routeros.ParseDetail(out, routeros.DefaultWidth)
	if err != nil {
		fmt.Println(err)
		return
	}
	e := entries[0]
	path, _ := e.Get("file-path")
	size, _ := e.Get("size")
	n, _ := routeros.ParseNumber(size)
	fmt.Println(e.Keys)
	fmt.Println(path)
	fmt.Println(n)
	// Output:
	// [type slot size file-path file-size]
	// /storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img
	// 53687091200
}

func ExampleClassify() {
	class, line := routeros.Classify("failure: not enough space\r\n", "", 0)
	fmt.Println(class, line)
	// Output: no_space failure: not enough space
}

func ExampleQuote() {
	slot := "pvc-1"
	if err := routeros.ValidSlot(slot); err != nil {
		fmt.Println(err)
		return
	}
	q, _ := routeros.Quote(slot)
	fmt.Println("/disk remove [find slot=" + q + "]")

	_, err := routeros.Quote("x\"; /system reboot")
	fmt.Println(err)
	// Output:
	// /disk remove [find slot="pvc-1"]
	// routeros: invalid value: console value "x\"; /system reboot": byte '"' at offset 1 is not allowed
}

func ExampleFormatSize() {
	s, _ := routeros.FormatSize(1537 << 20)
	fmt.Println(s)
	g, _ := routeros.FormatSize(50 << 30)
	fmt.Println(g)
	// Output:
	// 1537M
	// 50G
}
