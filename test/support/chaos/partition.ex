defmodule ExESDB.Chaos.Partition do
  @moduledoc false
  # Network partitions between the peers of an ExESDB.Chaos.Cluster:
  # nftables rules in a table of this cluster's own (inet
  # esdb_chaos_<test VM os pid>_<n>, one output chain) drop the packets of
  # a cut link both ways, raft and BEAM distribution alike, matched on a
  # peer's own loopback source address (bind shim) and the other's ports:
  #
  #   ip saddr A tcp dport {B's ports} drop   A's connections to B
  #   ip daddr A tcp sport {B's ports} drop   B's answers on them
  #
  # and the same with A and B swapped. A dropped packet is a blackhole, as
  # a real partition is: open connections stall until their timeouts.
  # The test VM (127.0.0.1) keeps reaching every peer. setup/1 deletes
  # the tables of test VMs that are gone (an earlier run killed before its
  # cleanup) and arranges this one's deletion at exit.

  @prefix "esdb_chaos_"

  @doc "Whether partitions can run here: nft usable (root) and the bind shim built."
  def available? do
    System.find_executable("nft") != nil and ExESDB.Chaos.Cluster.shim?() and
      match?({_, 0}, System.cmd("nft", ["list", "tables"], stderr_to_stdout: true))
  end

  @doc "Create this cluster's table (after removing leftovers); answers ctx with :nft."
  def setup(ctx) do
    leftovers()
    table = "#{@prefix}#{ExESDB.Test.Unique.id()}"

    nft!(
      "add table inet #{table}\nadd chain inet #{table} out { type filter hook output priority 0 ; }\n"
    )

    ExUnit.Callbacks.on_exit(fn -> nft("delete table inet #{table}\n") end)
    Map.put(ctx, :nft, table)
  end

  # Tables of test VMs no longer running.
  defp leftovers do
    {out, _} = System.cmd("nft", ["list", "tables"], stderr_to_stdout: true)

    for [_, table, pid] <- Regex.scan(~r/table inet (#{@prefix}(\d+)_\d+)/, out),
        not File.exists?("/proc/#{pid}"),
        do: nft("delete table inet #{table}\n")
  end

  @doc "Cut every link between nodes of different groups (a list of node lists)."
  def split(ctx, groups) do
    pairs =
      for {g, i} <- Enum.with_index(groups),
          {h, j} <- Enum.with_index(groups),
          i < j,
          a <- g,
          b <- h,
          do: {a, b}

    cut(ctx, pairs)
  end

  @doc "A ring: every node keeps only its two neighbours in `order`."
  def ring(ctx, order) do
    n = length(order)
    idx = Map.new(Enum.with_index(order))

    pairs =
      for a <- order,
          b <- order,
          idx[a] < idx[b],
          abs(idx[a] - idx[b]) not in [1, n - 1],
          do: {a, b}

    cut(ctx, pairs)
  end

  @doc """
  Cut the links {a, b} both ways (in one nft transaction). `only: :raft`
  cuts raft's connections alone: BEAM distribution goes on (a follower
  held behind whose node still calls the leader).
  """
  def cut(ctx, pairs, opts \\ []) do
    rules =
      for {a, b} <- pairs, {x, y} <- [{a, b}, {b, a}] do
        sx = ctx.specs[x]
        sy = ctx.specs[y]

        ports =
          if opts[:only] == :raft,
            do: "{ #{sy.raft_port} }",
            else: "{ #{sy.dist_port}, #{sy.raft_port} }"

        "add rule inet #{ctx.nft} out ip saddr #{sx.ip} tcp dport #{ports} drop\n" <>
          "add rule inet #{ctx.nft} out ip daddr #{sx.ip} tcp sport #{ports} drop\n"
      end

    nft!(Enum.join(rules))
  end

  @doc """
  Drop every TCP packet to or from loopback port `port` (a C node's raft
  port: what the others send it is lost, so it falls behind while still
  serving reads over distribution).
  """
  def cut_port(ctx, port) do
    nft!(
      "add rule inet #{ctx.nft} out tcp dport #{port} drop\n" <>
        "add rule inet #{ctx.nft} out tcp sport #{port} drop\n"
    )
  end

  @doc "Remove every cut."
  def heal(ctx), do: nft!("flush chain inet #{ctx.nft} out\n")

  defp nft!(script) do
    {out, rc} = nft(script)
    if rc != 0, do: raise("nft failed (#{rc}): #{out}\n#{script}")
    :ok
  end

  defp nft(script) do
    file = Path.join(System.tmp_dir!(), "esdb_chaos_nft_#{ExESDB.Test.Unique.id()}")
    File.write!(file, script)

    try do
      System.cmd("nft", ["-f", file], stderr_to_stdout: true)
    after
      File.rm(file)
    end
  end
end
