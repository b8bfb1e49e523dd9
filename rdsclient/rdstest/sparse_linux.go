package rdstest

import (
	"errors"
	"os"
	"syscall"
)

// lseek whence values for data and holes (Linux).
const (
	seekData = 3
	seekHole = 4
)

// copyExtents copies only the data extents of src, found with SEEK_DATA and
// SEEK_HOLE. done is false when the file system does not support them.
func copyExtents(dst, src *os.File, size int64) (done bool, err error) {
	for off := int64(0); off < size; {
		start, err := src.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return true, nil // only a hole remains
		}
		if err != nil {
			if off == 0 {
				return false, nil
			}
			return true, err
		}
		end, err := src.Seek(start, seekHole)
		if err != nil {
			return true, err
		}
		end = min(end, size)
		if err := copyRange(dst, src, start, end); err != nil {
			return true, err
		}
		off = end
	}
	return true, nil
}
