defmodule ExESDB.Test.PrefixSerializer do
  @moduledoc false
  # A serializer other than the default, so reads take the Elixir
  # deserialization path; it records the type it is given.
  @behaviour ExESDB.Serializer

  @impl true
  def serialize(term), do: "P:" <> :erlang.term_to_binary(term)

  @impl true
  def deserialize("P:" <> bin, opts), do: {:erlang.binary_to_term(bin), opts[:type]}
end
