module github.com/ringfs/ringfs

go 1.26.8

require golang.org/x/sys v0.49.0

require github.com/iceber/iouring-go v0.0.0-20230403020409-002cfd2e2a90

require github.com/dustin/go-humanize v1.1.0
