"""The SQLite mirror: how Patchwork's resources are described and stored.

Data flows upstream -> ``sync`` -> ``mirror`` -> ``gateway`` -> client.  This
package is the shared middle: the description of every API resource (its
fields per API version, filters, orderings, permissions and storage
columns), the schema with its migrations, and the code that writes
normalised upstream objects into the database.
"""
