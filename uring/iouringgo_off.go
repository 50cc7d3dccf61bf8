//go:build linux && !iouringgo

package uring

import "syscall"

// newIouringgo reports that this binary was built without the iouringgo
// backend (build with -tags iouringgo -ldflags=-checklinkname=0).
func newIouringgo(Options) (Backend, error) {
	return nil, &BackendError{Reason: "iouringgo backend not built in (use -tags iouringgo -ldflags=-checklinkname=0)", Errno: syscall.EOPNOTSUPP}
}
