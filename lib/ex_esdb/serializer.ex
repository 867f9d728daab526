defmodule ExESDB.Serializer do
  @moduledoc """
  How event data, metadata and snapshot data become the bytes the store
  keeps. Chosen per store with the `serializer:` option; the default is
  `ExESDB.Serializer.Term`.
  """

  @doc "Encode a term to bytes."
  @callback serialize(term()) :: binary()

  @doc """
  Decode bytes written by `serialize/1`. `opts` carries `:type`, the
  event type (or snapshot source type) the bytes were stored under.
  """
  @callback deserialize(binary(), keyword()) :: term()
end

defmodule ExESDB.Serializer.Term do
  @moduledoc """
  The default serializer: `:erlang.term_to_binary/1`. The store records
  that these payloads are terms, and reads decode only payloads recorded
  so: bytes written through the Erlang API come back as the same bytes,
  whatever they look like. Payloads stored before encodings were recorded
  (when this serializer's bytes were stored as plain bytes) are decoded
  with the same checks when they are external term format, and come back
  as bytes when not.

  `binary_to_term(bin, [:safe])` is not enough to read stored terms: it
  refuses unknown atoms but still creates funs (local funs run when
  called), pids, ports and references, and it inflates a compressed term
  to whatever size the term declares. So stored terms are decoded by the
  NIF's checked decoder (`ExESDB.Backend.NIF.decode_term/1`): it walks the
  external term format first and refuses funs, pids, ports, references,
  atoms this VM does not have and compressed terms declaring more than
  16 MiB, before decoding anything. A refused term reads as
  `{:error, {:undecodable, reason}}`; such terms are refused when written
  too.
  """
  @behaviour ExESDB.Serializer

  @impl true
  def serialize(term), do: :erlang.term_to_binary(term)

  @doc """
  Decode with the store's checks (see the module doc); raises
  `ArgumentError` for bytes that may not be decoded.
  """
  @impl true
  def deserialize(<<>>, _opts), do: nil

  def deserialize(bin, _opts) do
    case ExESDB.Backend.NIF.decode_term(bin) do
      {:ok, term} -> term
      {:error, {:undecodable, reason}} -> raise ArgumentError, "undecodable term: #{reason}"
    end
  end
end
