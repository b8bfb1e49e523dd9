package rdstest

import (
	"io"
	"os"
)

const copyBlock = 1 << 20

// copySparse copies the data of src into dst, which is already truncated
// to at least src's size. Only regions holding data are written, so holes
// in src stay holes in dst and a large thin disk copies quickly.
func copySparse(dst, src *os.File) error {
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if done, err := copyExtents(dst, src, fi.Size()); done {
		return err
	}
	return copyNonZero(dst, src, fi.Size())
}

// copyNonZero is the portable fallback: it reads everything and skips
// writing all-zero blocks.
func copyNonZero(dst, src *os.File, size int64) error {
	buf := make([]byte, copyBlock)
	for off := int64(0); off < size; {
		n, err := src.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyRange copies bytes [start, end) of src to the same offsets of dst.
func copyRange(dst, src *os.File, start, end int64) error {
	_, err := io.CopyBuffer(io.NewOffsetWriter(dst, start), io.NewSectionReader(src, start, end-start), make([]byte, copyBlock))
	return err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
