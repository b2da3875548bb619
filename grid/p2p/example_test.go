package p2p_test

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/memserver"
	"github.com/sphere-grid/sphere/grid/p2p"
)

// Serve a store on one host and use it from another through a Client.
func Example() {
	rm, err := p2p.ResourceManager(p2p.Limits{})
	if err != nil {
		panic(err)
	}
	server, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm), libp2p.DisableRelay())
	if err != nil {
		panic(err)
	}
	defer server.Close()
	svc := p2p.Serve(server, memserver.New(grid.ServerID(server.ID())), p2p.ServeOptions{})
	defer svc.Close()

	client, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	client.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.PermanentAddrTTL)

	var s grid.Server = p2p.NewClient(client, server.ID(), p2p.ClientOptions{})
	shares, err := s.ListShares(context.Background(), [16]byte{1})
	fmt.Println(len(shares), err, s.ID() == grid.ServerID(server.ID()))
	// Output: 0 <nil> true
}
