// Package web will hold the local HTTP gateway: browse and share by cap, and
// publish git repositories as sandboxed apps. Not implemented yet.
package web
