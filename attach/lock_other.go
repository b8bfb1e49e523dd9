//go:build !unix

package attach

import (
	"errors"
	"os"
)

func lockFile(string) (*os.File, error) {
	return nil, errors.New("attach: FileStore needs flock, which this platform lacks")
}

func unlockFile(f *os.File) error { return f.Close() }
