package node

import "github.com/sphere-grid/sphere/grid"

// GridClient returns a grid client over the node's stores (in-process)
// and the storage peers it is connected to now, for in-process users such
// as the web gateway. It fails with ErrNoGridAPI when the node was given
// no client secrets.
func (n *Node) GridClient() (*grid.Client, error) { return n.gridClient() }
