defmodule ExESDB.Test.Unique do
  @moduledoc false
  # Names a test makes must not clash with another test VM on this
  # machine (helpers and CI run the same files at once): epmd node
  # names, store ids (a C node is named after its store), directories
  # under /tmp, nft rule files. System.unique_integer/1 counts the same
  # way in every fresh VM, so two runs of one file made the same names.

  @doc "A name part unique on this machine while this VM runs: OS pid and counter."
  def id, do: "#{System.pid()}_#{System.unique_integer([:positive])}"
end
