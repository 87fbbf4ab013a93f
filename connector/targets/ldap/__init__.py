"""targets/ldap"""
