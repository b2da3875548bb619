// Package fusetest holds the real-mount test suite of Sphere's FUSE frontend:
// ordinary tools (cp, git, rsync), go-fuse's POSIX cases, a seeded random
// operation model test, read-cap sharing and crash recovery, each against a
// real grid.Client over in-process storage servers.
//
// The tests skip when /dev/fuse is absent, unless SPHERE_REQUIRE_FUSE=1, in
// which case they fail. SPHERE_FUSETEST_BACKEND=loopback runs the suite
// against go-fuse's loopback filesystem instead, to check the tests
// themselves.
package fusetest
