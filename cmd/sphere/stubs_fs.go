package main

// Stubs for the tree verbs; each moves to its own cmd_<verb>.go file.

import (
	"errors"

	"github.com/spf13/cobra"
)

var errNotImplemented = errors.New("not implemented")

func notImplemented(use string) *cobra.Command {
	return &cobra.Command{Use: use, Hidden: true, RunE: func(*cobra.Command, []string) error { return errNotImplemented }}
}
