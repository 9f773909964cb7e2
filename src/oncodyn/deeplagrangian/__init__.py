"""DeepLagrangian: a flow-based Lagrangian solver of whole-space parabolic--elliptic Keller--Segel."""
